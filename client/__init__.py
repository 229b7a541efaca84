"""DearDiary: event-sourced ML experiment tracking.

import deardiary as dd
c = dd.connect("path/to/store")          # or "http://host:9000"
with c.start_iteration(project="p", experiment="e", params={"lr": "0.01"}) as it:
    it.log_metric("loss", 0.5)
"""
