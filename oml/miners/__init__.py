"""Miners: pick triplets or pairs out of a batch of embeddings with labels (OML 3.x/4.x names).

``DistributedMinerWrapper`` (mining across ``torch.distributed`` processes) is an addition not found in OML.
"""

from oml.miners.cross_batch import TripletMinerWithMemory
from oml.miners.distributed import DistributedMinerWrapper
from oml.miners.inbatch_all_tri import AllTripletsMiner, get_available_triplets
from oml.miners.inbatch_hard_cluster import HardClusterMiner
from oml.miners.inbatch_hard_tri import HardTripletsMiner
from oml.miners.inbatch_nhard_tri import NHardTripletsMiner
from oml.miners.miner_with_bank import MinerWithBank
from oml.miners.pairs import PairsMiner

__all__ = [
    "AllTripletsMiner",
    "get_available_triplets",
    "HardTripletsMiner",
    "NHardTripletsMiner",
    "HardClusterMiner",
    "TripletMinerWithMemory",
    "MinerWithBank",
    "PairsMiner",
    "DistributedMinerWrapper",
]
