"""Tasks, registered by name (`config.task`; `mmjax.registry.TASKS`).

Each glues a model to a loss and predict functions. The contract is `mmjax.tasks.base.Task`;
`mmjax.experiment.build_task` builds the one a config names.
"""
