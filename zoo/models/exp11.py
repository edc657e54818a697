from .._moved import moved

moved(__name__, "zoo.families.exp11.model")
