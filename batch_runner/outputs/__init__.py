"""Files on disk: downloads, the one write path (`files`), hosts, embedded parameters, metadata.

May import the base modules and, from `api`, only `http` and `deadlines` (what a file download
shares with an API call), never the API's parser (`answers`) or its client.
"""
