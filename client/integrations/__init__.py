"""Integrations with sweep and training libraries; each module imports its library, so
import the one you use (`deardiary.integrations.optuna`)."""
