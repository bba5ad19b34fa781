"""Stage 3: scores -> a (model, layer).

The protocol the report, the selector and the studies share, and LayerSelector with its
printout.
"""
