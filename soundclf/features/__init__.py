"""What is computed of a clip: summary features, spectrograms, pretrained encoders'
embeddings, the parallel engine and per-clip cache that computes them, and the feature
scaling.
"""
