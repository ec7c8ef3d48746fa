"""PinnerFormer (Pancha et al., KDD'22): one user embedding from a causal transformer over the user's
recent actions, trained to predict the user's positives over the following weeks.

``model`` (user and pin towers, config), ``data`` (in-memory user timelines, bad-input counts, label
windows), ``loss`` (objectives and the sampled / full softmax), ``training`` (the single-process loop,
checkpoints, validation). See docs/PINNERFORMER.md.
"""
