"""AlexNet on CIFAR-10 with Keras 3.

Importing the package is cheap: Keras and TensorFlow load only when a module
that needs them is imported (`alexnet.models`, `alexnet.trainer`, ...).
"""

__version__ = "0.1.0"
