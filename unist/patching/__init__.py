"""The universal patcher: grids, graphs and video -> one packed token space (`TokenBatch`) and back.

`UniversalPatcher(PatcherConfig(...)).patchify(windows)` builds a TokenBatch; `.unpatchify(values,
batch)` maps (L, S, C) token values back to each sample's shape. `partition_graph` cuts graphs into
spatial patches. The learned embedding of tokens is the network's (`unist.model.embed`).
"""
from unist.patching.partition import Partition, partition_graph
from unist.patching.patcher import PatcherConfig, PatchSpec, SpaceLayout, UniversalPatcher
from unist.patching.tokens import LAYOUT_IDS, TokenBatch

__all__ = ["LAYOUT_IDS", "Partition", "PatchSpec", "PatcherConfig", "SpaceLayout",
           "TokenBatch", "UniversalPatcher", "partition_graph"]
