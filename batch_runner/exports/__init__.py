"""Data-set exports of a run directory (or a folder of shards): a reader over the state that
yields one sample per output file (`samples.py`), and one writer per format with the same
`write(sample)` / `close()` shape (`parquet.py`, `webdataset.py`); `dataset.py` joins them.

Everything streams: samples are read from the state a batch of jobs at a time and each file's
bytes are read when its sample is written, so memory stays flat in the number of files.
"""
