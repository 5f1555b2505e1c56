"""Neural networks: the segmenter that draws masks and the classifiers that use them."""
