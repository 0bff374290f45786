"""The app's plumbing, shared by the tabs: one cached forward pass per photo (`inference`), where
photos and checkpoints come from (`photos`, `sources`), private PNG files (`downloads`), the texts
in three languages (`i18n`, `locales/`), the server's memory (`malloc`) and starting it (`serve`)."""
