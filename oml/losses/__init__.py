"""Losses for metric learning with OML 3.x/4.x names: triplet losses (with miners), ArcFace, surrogate precision.

``ProtoNetLoss`` is an addition not found in OML.
"""

from oml.losses.arcface import ArcFaceLoss, ArcFaceLossWithMLP
from oml.losses.protonet import ProtoNetLoss
from oml.losses.surrogate_precision import SurrogatePrecision
from oml.losses.triplet import TripletLoss, TripletLossPlain, TripletLossWithMiner

__all__ = [
    "TripletLoss",
    "TripletLossPlain",
    "TripletLossWithMiner",
    "ArcFaceLoss",
    "ArcFaceLossWithMLP",
    "SurrogatePrecision",
    "ProtoNetLoss",
]
