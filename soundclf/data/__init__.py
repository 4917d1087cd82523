"""Where recordings come from: archives and downloads, the dataset adapters, audio loading."""
