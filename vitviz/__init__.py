"""vitviz: a Vision Transformer that segments pets, and an app that shows inside it.

Subpackages by concern: `model` (the network), `training` (data, recipes, checkpoints, jobs),
`views` (what each tab computes, and the picture library), `ui` (each tab's Gradio wiring) and
`app` (plumbing shared by the tabs). The modules left at this level are the commands, run as
`python -m vitviz.<name>`: train, evaluate, pseudo, export, experiments, shapes, bench."""
