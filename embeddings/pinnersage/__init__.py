"""PinnerSage (Pal et al., KDD'20): several embeddings per user, the medoids of Ward clusters of the pins
the user engaged with, ranked by time-decayed importance.

``clustering`` (Ward cut at a distance threshold, medoid of a cluster), ``medoids`` (the per-user entry
point ``user_medoids`` run by the Spark job, importance, defaults). See docs/PINNERSAGE.md.
"""
