from .._moved import moved

moved(__name__, "zoo.families.dhvn.model")
