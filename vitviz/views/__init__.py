"""What each tab shows, computed without Gradio: one module per tab, named after it (`segment`,
`journey`, `positions`, `attention`, `epochs`, `train`, and the guided `tour`), and the picture
library they all draw with (`pictures`). Every function here can be tested on its own."""
