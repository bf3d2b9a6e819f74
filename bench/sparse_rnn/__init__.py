"""The sparse RNN benchmark: one-shot and gradual ``compress.sparse_rnn`` against ``torch.nn.utils.prune``
on the zoo GRU and LSTM, structured variants, file sizes and ONNX Runtime latency.
``python -m bench sparse_rnn``; rows in :mod:`bench.sparse_rnn.rows`."""
