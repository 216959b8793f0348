# %% [markdown]
# # batch_runner from a notebook
# Each `# %%` block is a cell (Jupyter, VS Code). Run against the built-in simulator: no token,
# no cost. For real jobs set RUNCOMFY_API_TOKEN and drop `simulate=True`.

# %%
import batch_runner

prompts = [f"A {animal} in fresh snow, photograph" for animal in ("red fox", "owl", "hare")]
result = batch_runner.run(prompts, out="jobs/notebook", simulate=True, progress=True)
print(result.exit_code, result.summary["counts"], result.run_dir)

# %% Running it again submits nothing new: every job's key is already in the state file.
again = batch_runner.run(prompts, out="jobs/notebook", simulate=True)
assert again.summary["counts"] == result.summary["counts"]

# %% Errors are exceptions of batch_runner.errors, never SystemExit.
from batch_runner.errors import ManifestError

try:
    batch_runner.run([{"prompt": "a fox", "resolution": "huge"}], out="jobs/bad", simulate=True)
except ManifestError as exc:
    print(exc)  # <jobs>:1: resolution: 'huge' is not one of the allowed values ...

# %% The run directory is a Hugging Face data set (pip install datasets).
# from datasets import load_dataset
# ds = load_dataset("imagefolder", data_dir=str(result.run_dir))
