"""Everything a training run needs besides the model: the dataset and its transforms (`data`,
`resident`), recipe presets (`presets`), losses and metrics, checkpoint folders (`checkpoint`),
predictions of a trained model (`predict`, `smallpets`), and the app's background training jobs
(`jobs`). The commands that drive them are the top-level modules `vitviz.train`, `vitviz.evaluate`,
`vitviz.pseudo`, `vitviz.export`, `vitviz.experiments`, `vitviz.shapes` and `vitviz.bench`."""
