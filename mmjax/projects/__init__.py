"""Projects: what is specific to one dataset or line of research, on top of the generic core.

Each project registers its datasets, models, hooks and evaluators (`mmjax.registry`) when its
package is imported. The projects in `BUILTIN` ship with mmjax and are imported before any
registry lookup; another project is named in a config's `imports` list.
"""

BUILTIN = ("mmjax.projects.sort_of_clevr", "mmjax.projects.bouncing_shapes")
