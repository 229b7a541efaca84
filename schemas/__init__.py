"""The event vocabulary of DearDiary: envelope, event types, codec, ids and errors.

This package depends on nothing else in DearDiary; everything else depends on it.
"""
