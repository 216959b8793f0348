"""The offline pipeline: manifest files -> rows -> jobs -> validated jobs."""
