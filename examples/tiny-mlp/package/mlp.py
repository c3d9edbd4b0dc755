"""A one-hidden-layer perceptron in plain Python: 2 inputs, tanh hidden layer,
sigmoid output, trained with per-sample SGD on binary cross-entropy.

No third-party modules, so the example runs on any node with python3.
"""
import math
import random


def _sigmoid(z: float) -> float:
    # Split by sign so exp never overflows.
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


class MLP:
    def __init__(self, inputs: int, hidden: int, seed: int = 0) -> None:
        rng = random.Random(seed)
        scale = 1.0 / math.sqrt(inputs)
        self.w1 = [[rng.uniform(-scale, scale) for _ in range(inputs)] for _ in range(hidden)]
        self.b1 = [0.0] * hidden
        self.w2 = [rng.uniform(-1.0, 1.0) / math.sqrt(hidden) for _ in range(hidden)]
        self.b2 = 0.0

    def _forward(self, x):
        h = [math.tanh(sum(w * xi for w, xi in zip(row, x)) + b) for row, b in zip(self.w1, self.b1)]
        y = _sigmoid(sum(w * hi for w, hi in zip(self.w2, h)) + self.b2)
        return h, y

    def predict(self, x) -> float:
        return self._forward(x)[1]

    def step(self, x, label: int, lr: float) -> float:
        """One SGD step on one sample; returns its loss before the update."""
        h, y = self._forward(x)
        eps = 1e-12
        loss = -(label * math.log(y + eps) + (1 - label) * math.log(1 - y + eps))
        dz2 = y - label  # d loss / d output pre-activation for sigmoid + cross-entropy
        for j, hj in enumerate(h):
            dz1 = dz2 * self.w2[j] * (1.0 - hj * hj)
            self.w2[j] -= lr * dz2 * hj
            for i, xi in enumerate(x):
                self.w1[j][i] -= lr * dz1 * xi
            self.b1[j] -= lr * dz1
        self.b2 -= lr * dz2
        return loss

    def evaluate(self, rows):
        """Mean loss and accuracy over (features, label) rows."""
        eps = 1e-12
        total, correct = 0.0, 0
        for x, label in rows:
            y = self.predict(x)
            total += -(label * math.log(y + eps) + (1 - label) * math.log(1 - y + eps))
            correct += int((y >= 0.5) == (label == 1))
        n = max(1, len(rows))
        return total / n, correct / n

    def to_dict(self) -> dict:
        return {"w1": self.w1, "b1": self.b1, "w2": self.w2, "b2": self.b2}

    @classmethod
    def from_dict(cls, d: dict) -> "MLP":
        model = cls.__new__(cls)
        try:
            model.w1 = [[float(v) for v in row] for row in d["w1"]]
            model.b1 = [float(v) for v in d["b1"]]
            model.w2 = [float(v) for v in d["w2"]]
            model.b2 = float(d["b2"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"malformed model weights: {e}") from e
        if not (len(model.w1) == len(model.b1) == len(model.w2)) or any(len(r) != 2 for r in model.w1):
            raise ValueError("model weights have inconsistent shapes")
        return model
