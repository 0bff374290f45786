"""The Vision Transformer itself: tokenizer (`patches`), position embeddings (`posembed`),
self-attention (`attention`), the encoder and heads (`vit`), the skip decoder (`decoder`), and the
shape trace of one forward pass (`trace`). Nothing here knows about training or the app."""
