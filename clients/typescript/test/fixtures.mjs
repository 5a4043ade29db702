// Small training configs: an MLP (seed 003's shape) on 400 of the digits shipped with pivotd, two epochs, so that a
// session trains in seconds on one shared CPU core (as tests/training/helpers.py does).
export const MLP = {
    input_size: 784,
    layers: [
        { type: "linear", in: 784, out: 32 },
        { type: "relu" },
        { type: "linear", in: 32, out: 10 },
        { type: "softmax" },
    ],
};

export const HYPERPARAMS = {
    epochs: 2,
    batch_size: 32,
    optimizer: { type: "sgd", lr: 0.1, momentum: 0.0 },
    loss: "cross_entropy",
    seed: 42,
    train_split: 0.8,
    shuffle: true,
    max_samples: 400,
    dataset: "digits",
    layerwise_every: 5,
};

export const TRAIN_CONFIG = { architecture: MLP, hyperparams: HYPERPARAMS };
