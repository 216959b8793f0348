"""The models and stage text the pipeline tests share (each test file adds its own stages).

T2I makes images, I2V animates one image into a video, V2V extends a video: the chain
stills → clips → longer that the pipeline tests run on the simulator.
"""

from __future__ import annotations

T2I = "bytedance/seedream-5/lite/text-to-image"
I2V = "blackforestlabs/flux-3/image-to-video/draft"
V2V = "blackforestlabs/flux-3/extend-video/draft"

# a stills stage's sweep: a cat and a dog, each 1 or 2 images (at most 4 files)
RAIN_SWEEP = """\
    sweep:
      - prompt: "A {animal} in the rain"
        vars: {animal: [cat, dog]}
        sequential_image_generation: auto
        max_images: 2
"""

# a clip of 5 s per still, its prompt read from the parent
CLIPS = f"""\
  clips:
    model: {I2V}
    jobs:
      - image_url: {{from: stills}}
        prompt: "{{stills.prompt}}, the camera pulls back"
        duration: "5"
"""

# a longer clip from each clip's first file, its prompt read two stages up
LONGER = f"""\
  longer:
    model: {V2V}
    jobs:
      - video_url: {{from: clips, first: true}}
        prompt: "{{stills.prompt}} and it goes on"
"""
