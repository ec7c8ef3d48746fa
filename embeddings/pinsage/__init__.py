"""PinSage (Ying et al., KDD'18): a GNN over PPR neighborhoods that embeds pins from content features.

``model`` (the network and its config), ``sampling`` (computation graphs), ``loss``, ``training``
(producer-consumer minibatches, curriculum, checkpoints), ``inference`` (layer-wise over all pins),
``data`` (inputs as row-indexed arrays), ``model_dir`` (saving and loading a trained model).
See docs/PINSAGE.md.
"""
