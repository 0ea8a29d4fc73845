from .defaults import default_argument_parser, default_setup, setup_cfg
from .launch import launch
from .trainer import Trainer

__all__ = ["Trainer", "default_argument_parser", "default_setup", "launch", "setup_cfg"]
