"""The SortedNet benchmark: widths of one family against independently trained networks of the same
shapes, ONNX parity, and the engine's speed on its bundle (overhead, switching widths, latency per width).
``python -m bench sortednet``; rows in :mod:`bench.sortednet.rows`."""
