"""Networks and their weights: VGG-19 as pure functions, its weights, convolutions."""
