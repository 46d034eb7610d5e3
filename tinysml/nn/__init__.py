"""Neural-network building blocks: Module, Parameter and layers."""
from .module import Module, Parameter
from .layers import (Conv1d, BatchNorm1d, Linear, LayerNorm, Dropout, Activation, Sequential, ConvBNAct,
                     SqueezeExcite, kaiming_normal_fan_out)

__all__ = ["Module", "Parameter", "Conv1d", "BatchNorm1d", "Linear", "LayerNorm", "Dropout", "Activation",
           "Sequential", "ConvBNAct", "SqueezeExcite", "kaiming_normal_fan_out"]
