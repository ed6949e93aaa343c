"""A small 1-D convolutional network in numpy, for signal datasets such as MNIST-1D.

Each feature vector is read as a one-channel signal.  Convolution layers ("same" padding, a
stride, ReLU) feed one dense layer to the class logits.  A convolution is an im2col gather
(an index of the windows' positions) followed by one matrix product; its backward pass is the two
transposed products plus a scatter-add of the window gradients, one strided slice per kernel
tap.  Training is minibatch SGD with momentum (the velocity starts at zero in every call, so a
client's local run depends only on the weights it was handed and its generator).

The flat weight vector is laid out like `shapes()`: per convolution (out, in, kernel) then
(out,), then the dense (classes, length * channels) and (classes,).  The dense layer reads the
last feature map position-major: index position * channels + channel.
"""

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fl.model import Shapes, parameter_count

FloatArray = npt.NDArray[np.float64]
LabelArray = npt.NDArray[np.int64]


def _softmax(logits: FloatArray) -> FloatArray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    out: FloatArray = e / e.sum(axis=1, keepdims=True)
    return out


@dataclass(frozen=True, slots=True)
class _Conv:
    """One layer's geometry: input length and channels, output length, and the window index."""

    length_in: int
    channels_in: int
    channels_out: int
    kernel: int
    stride: int

    @property
    def pad(self) -> int:
        return self.kernel // 2

    @property
    def length_out(self) -> int:
        return (self.length_in + 2 * self.pad - self.kernel) // self.stride + 1

    def windows(self) -> npt.NDArray[np.int64]:
        starts = self.stride * np.arange(self.length_out)
        out: npt.NDArray[np.int64] = starts[:, None] + np.arange(self.kernel)[None, :]
        return out


@dataclass(frozen=True, slots=True)
class CNN:
    """The defaults (4,298 weights for MNIST-1D) were tuned for `fedchain eval --dataset mnist1d`
    (30 clients, Dirichlet 0.5, 30 rounds, plain float FedAvg seed 0): learning rates 0.01 and
    0.03-0.05 or batches of 16 end lower and less steadily; more local epochs (8, or 10 at batch
    16) cost more time for no more accuracy; two layers of 8 channels end near 50%."""

    n_features: int
    n_classes: int
    channels: tuple[int, ...] = (16, 16, 16)
    strides: tuple[int, ...] = (1, 2, 2)
    kernel: int = 5
    epochs: int = 5
    batch_size: int = 8
    learning_rate: float = 0.02
    momentum: float = 0.9

    def __post_init__(self) -> None:
        if len(self.channels) != len(self.strides) or not self.channels:
            raise ValueError("CNN: channels and strides need one entry per convolution layer")
        if self.kernel < 1 or min(self.strides) < 1 or min(self.channels) < 1:
            raise ValueError("CNN: kernel, strides and channels must be positive")

    def _layers(self) -> list[_Conv]:
        layers: list[_Conv] = []
        length, channels_in = self.n_features, 1
        for channels_out, stride in zip(self.channels, self.strides, strict=True):
            layer = _Conv(length, channels_in, channels_out, self.kernel, stride)
            if layer.length_out < 1:
                raise ValueError(f"CNN: {self.n_features} features are too short for the strides")
            layers.append(layer)
            length, channels_in = layer.length_out, channels_out
        return layers

    def _flat_size(self) -> int:
        last = self._layers()[-1]
        return last.length_out * last.channels_out

    def shapes(self) -> Shapes:
        out: list[tuple[int, ...]] = []
        for layer in self._layers():
            out += [(layer.channels_out, layer.channels_in, layer.kernel), (layer.channels_out,)]
        out += [(self.n_classes, self._flat_size()), (self.n_classes,)]
        return tuple(out)

    def init(self, rng: np.random.Generator) -> FloatArray:
        parts: list[FloatArray] = []
        for layer in self._layers():
            fan_in = layer.channels_in * layer.kernel
            shape = (layer.channels_out, layer.channels_in, layer.kernel)
            parts += [rng.normal(0.0, np.sqrt(2.0 / fan_in), shape).ravel()]
            parts += [np.zeros(layer.channels_out)]
        flat = self._flat_size()
        parts += [rng.normal(0.0, np.sqrt(1.0 / flat), (self.n_classes, flat)).ravel()]
        parts += [np.zeros(self.n_classes)]
        return np.concatenate(parts)

    def _unpack(self, w: FloatArray) -> list[FloatArray]:
        """Views into `w`, one per entry of `shapes()`."""
        shapes = self.shapes()
        if w.size != parameter_count(shapes):
            raise ValueError(f"CNN: {w.size} weights, the layout needs {parameter_count(shapes)}")
        out: list[FloatArray] = []
        start = 0
        for shape in shapes:
            size = int(np.prod(shape))
            out.append(w[start : start + size].reshape(shape))
            start += size
        return out

    def logits(self, weights: FloatArray, x: FloatArray) -> FloatArray:
        return self._forward(self._unpack(weights), self._layers(), x)[0]

    def loss_and_gradient(
        self, weights: FloatArray, x: FloatArray, y: LabelArray
    ) -> tuple[float, FloatArray]:
        """Mean cross-entropy on (x, y) and its gradient, laid out like the weights."""
        grad = np.empty_like(weights)
        loss = self._backward(self._unpack(weights), self._layers(), x, y, self._unpack(grad))
        return loss, grad

    def train(
        self, weights: FloatArray, x: FloatArray, y: LabelArray, rng: np.random.Generator
    ) -> FloatArray:
        w = weights.copy()
        params = self._unpack(w)  # views: they follow the in-place steps on w
        layers = self._layers()
        grad = np.empty_like(w)
        grads = self._unpack(grad)
        velocity = np.zeros_like(w)
        for _ in range(self.epochs):
            order = rng.permutation(len(y))
            for start in range(0, len(y), self.batch_size):
                idx = order[start : start + self.batch_size]
                self._backward(params, layers, x[idx], y[idx], grads)
                velocity *= self.momentum
                velocity += grad
                w -= self.learning_rate * velocity
        return w

    def _forward(
        self, params: list[FloatArray], layers: list[_Conv], x: FloatArray
    ) -> tuple[FloatArray, list[tuple[FloatArray, FloatArray]]]:
        """Logits, and per layer the im2col matrix and the pre-activation (for backward)."""
        n = len(x)
        a = x[:, :, None]  # (batch, length, channels): channels last
        cache: list[tuple[FloatArray, FloatArray]] = []
        for i, layer in enumerate(layers):
            kernel, bias = params[2 * i], params[2 * i + 1]
            padded = np.zeros((n, layer.length_in + 2 * layer.pad, layer.channels_in))
            padded[:, layer.pad : layer.pad + layer.length_in, :] = a
            cols = padded[:, layer.windows(), :].reshape(n * layer.length_out, -1)
            # a row of cols is (window tap, input channel) pairs; the kernel is (out, in, tap)
            z = cols @ kernel.transpose(0, 2, 1).reshape(layer.channels_out, -1).T + bias
            cache.append((cols, z))
            a = np.maximum(z, 0.0).reshape(n, layer.length_out, layer.channels_out)
        dense, dense_bias = params[-2], params[-1]
        out: FloatArray = a.reshape(n, -1) @ dense.T + dense_bias
        return out, cache

    def _backward(
        self,
        params: list[FloatArray],
        layers: list[_Conv],
        x: FloatArray,
        y: LabelArray,
        grads: list[FloatArray],
    ) -> float:
        """Writes the gradient of the mean cross-entropy into `grads`; returns the loss."""
        logits, cache = self._forward(params, layers, x)
        probs = _softmax(logits)
        n = len(y)
        loss = float(-np.mean(np.log(np.maximum(probs[np.arange(n), y], 1e-300))))
        err = probs
        err[np.arange(n), y] -= 1.0
        err /= n
        last_z = cache[-1][1]
        grads[-2][...] = err.T @ np.maximum(last_z, 0.0).reshape(n, -1)
        grads[-1][...] = err.sum(axis=0)
        # gradient at the last feature map, rows (batch * length), columns channels
        upstream: FloatArray = (err @ params[-2]).reshape(last_z.shape)
        for i in range(len(layers) - 1, -1, -1):
            layer = layers[i]
            cols, z = cache[i]
            dz = upstream * (z > 0)
            grad_matrix = dz.T @ cols  # (out, tap * in)
            shape = (layer.channels_out, layer.kernel, layer.channels_in)
            grads[2 * i][...] = grad_matrix.reshape(shape).transpose(0, 2, 1)
            grads[2 * i + 1][...] = dz.sum(axis=0)
            if i == 0:
                break
            kernel_matrix = params[2 * i].transpose(0, 2, 1).reshape(layer.channels_out, -1)
            dcols = (dz @ kernel_matrix).reshape(n, layer.length_out, layer.kernel, -1)
            padded = np.zeros((n, layer.length_in + 2 * layer.pad, layer.channels_in))
            span = layer.stride * (layer.length_out - 1) + 1
            for tap in range(layer.kernel):  # scatter-add of the overlapping windows
                padded[:, tap : tap + span : layer.stride, :] += dcols[:, :, tap, :]
            below = padded[:, layer.pad : layer.pad + layer.length_in, :]
            upstream = below.reshape(n * layer.length_in, layer.channels_in)
        return loss

    def predict(self, weights: FloatArray, x: FloatArray) -> LabelArray:
        out: LabelArray = np.argmax(self.logits(weights, x), axis=1)
        return out
