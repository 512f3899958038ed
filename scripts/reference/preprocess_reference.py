#!/usr/bin/env python3
"""Independent reference for imagenet-eval's preprocessing (Pillow, OpenCV, numpy).

Usage: preprocess_reference.py JOBS.json

JOBS.json is a list of jobs; every job reads an RGB uint8 image (H, W, 3) from `input` (.npy,
so JPEG decoding is not involved) and writes its result(s) with np.save:

  {"kind": "resize", "input": ..., "output": ..., "method": M, "width": W, "height": H}
      the whole image resized with the library call M names:
        pillow-bilinear / pillow-bicubic / nearest -> PIL.Image.resize(BILINEAR/BICUBIC/NEAREST)
        cv-linear / cv-area -> cv2.resize(INTER_LINEAR / INTER_AREA)
  {"kind": "pipeline", "input": ..., "output": ..., "pixels": ..., "config": {...}}
      the full recipe written out the way torchvision / timm / TF / Horizon scripts do it;
      `config` is imagenet-eval's PreprocessConfig as JSON. Writes the float32 tensor (C,H,W or
      H,W,C) to `output` and the 8-bit image just before normalisation to `pixels`.
  {"kind": "nv12", "input": ..., "output": ..., "range": "video"|"full", "to": "rgb"|"yuv444"}
      the NV12 round trip alone on an even-sized image.

torch/torchvision are not installed; their recipes are transcribed below with the source they
come from.
"""
import json
import sys

import cv2
import numpy as np
from PIL import Image

PIL_METHODS = {
    "pillow-bilinear": Image.Resampling.BILINEAR,
    "pillow-bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
}
CV_METHODS = {"cv-linear": cv2.INTER_LINEAR, "cv-area": cv2.INTER_AREA}


def resize(rgb, width, height, method):
    if method in PIL_METHODS:
        return np.asarray(Image.fromarray(rgb).resize((width, height), PIL_METHODS[method]))
    # OpenCV scripts work in BGR; resizing is per channel, so the order does not matter, but
    # do it the way the scripts do.
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    out = cv2.resize(bgr, (width, height), interpolation=CV_METHODS[method])
    return np.ascontiguousarray(out[..., ::-1])


def shorter_side_size(width, height, size):
    # torchvision.transforms.functional._compute_resized_output_size for an int size:
    # new_short, new_long = size, int(size * long / short)
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(size * long / short)
    return (size, new_long) if width <= height else (new_long, size)


def crop_offset(margin, rounding):
    if rounding == "half-even":
        # torchvision center_crop: int(round((image_height - crop_height) / 2.0))
        return int(round(margin / 2.0))
    return margin // 2


def nv12_video(rgb):
    """OpenCV BGR -> I420 (video range), repacked as NV12 planes."""
    h, w, _ = rgb.shape
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    flat = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420).reshape(-1)
    y = flat[: h * w].reshape(h, w)
    u = flat[h * w : h * w + h * w // 4].reshape(h // 2, w // 2)
    v = flat[h * w + h * w // 4 :].reshape(h // 2, w // 2)
    return y, u, v


def nv12_video_to_rgb(y, u, v):
    h, w = y.shape
    nv12 = np.concatenate([y.reshape(-1), np.stack([u, v], -1).reshape(-1)]).reshape(h * 3 // 2, w)
    return cv2.cvtColor(nv12, cv2.COLOR_YUV2RGB_NV12)


def round_half_up(x):
    return np.clip(np.floor(x + 0.5), 0, 255).astype(np.uint8)


def nv12_full(rgb):
    """BT.601 full range (JFIF), chroma = mean of the 2x2 block's chroma, float64."""
    r, g, b = [rgb[..., i].astype(np.float64) for i in range(3)]
    y = round_half_up(0.299 * r + 0.587 * g + 0.114 * b)
    uu = -0.168736 * r - 0.331264 * g + 0.5 * b
    vv = 0.5 * r - 0.418688 * g - 0.081312 * b

    def block_mean(p):
        return (p[0::2, 0::2] + p[0::2, 1::2] + p[1::2, 0::2] + p[1::2, 1::2]) / 4

    return y, round_half_up(block_mean(uu) + 128), round_half_up(block_mean(vv) + 128)


def upsample(plane):
    return np.repeat(np.repeat(plane, 2, axis=0), 2, axis=1)


def nv12_full_to_rgb(y, u, v):
    yf = y.astype(np.float64)
    uf = upsample(u).astype(np.float64) - 128
    vf = upsample(v).astype(np.float64) - 128
    r = yf + 1.402 * vf
    g = yf - 0.344136 * uf - 0.714136 * vf
    b = yf + 1.772 * uf
    return np.stack([round_half_up(r), round_half_up(g), round_half_up(b)], -1)


def nv12_round_trip(rgb, value_range, to):
    y, u, v = nv12_video(rgb) if value_range == "video" else nv12_full(rgb)
    if to == "yuv444":
        return np.stack([y, upsample(u), upsample(v)], -1)
    return nv12_video_to_rgb(y, u, v) if value_range == "video" else nv12_full_to_rgb(y, u, v)


def geometry(rgb, cfg):
    h, w, _ = rgb.shape
    side = cfg["cropSize"]
    method = cfg["interpolation"]
    if cfg["geometry"] == "resize-crop":
        size = cfg["resizeSize"]
        if cfg.get("cropPct") is not None:
            # timm transforms_imagenet_eval: scale_size = math.floor(img_size / crop_pct)
            size = int(np.floor(side / cfg["cropPct"]))
        nw, nh = shorter_side_size(w, h, size)
        resized = resize(rgb, nw, nh, method)
        top = crop_offset(nh - side, cfg["cropRounding"])
        left = crop_offset(nw - side, cfg["cropRounding"])
        return resized[top : top + side, left : left + side]
    if cfg["geometry"] == "central-fraction":
        # tf.image.central_crop
        f = cfg["centralFraction"]
        top = int((h - h * f) / 2)
        left = int((w - w * f) / 2)
        region = np.ascontiguousarray(rgb[top : h - top, left : w - left])
        return resize(region, side, side, method)
    # ultralytics letterbox (auto=False, scaleFill=False, scaleup=True)
    r = min(side / h, side / w)
    nw, nh = int(round(w * r)), int(round(h * r))
    nw, nh = min(max(nw, 1), side), min(max(nh, 1), side)
    dw, dh = (side - nw) / 2, (side - nh) / 2
    resized = resize(rgb, nw, nh, method)
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    pad = cfg["letterboxPad"]
    out = cv2.copyMakeBorder(
        resized, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(pad, pad, pad)
    )
    return out[:side, :side]


def normalise(pixels, cfg):
    mean = np.array(cfg["mean"], dtype=np.float64)
    if cfg.get("scale") is not None:
        x = (pixels.astype(np.float64) - mean) * np.array(cfg["scale"], dtype=np.float64)
    else:
        x = (pixels.astype(np.float64) - mean) / np.array(cfg["std"], dtype=np.float64)
    x = x.astype(np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)) if cfg["layout"] == "nchw" else x


def pipeline(rgb, cfg):
    pixels = geometry(rgb, cfg)
    if cfg["chroma"] != "none":
        to = "yuv444" if cfg["channels"] == "yuv444" else "rgb"
        pixels = nv12_round_trip(pixels, "video" if cfg["chroma"] == "nv12-video" else "full", to)
    if cfg["channels"] == "bgr":
        pixels = pixels[..., ::-1]
    pixels = np.ascontiguousarray(pixels)
    return pixels, normalise(pixels, cfg)


def torchvision_tensor(rgb, size=256, crop=224, method="pillow-bilinear"):
    """The torchvision eval transform, step by step in float32 as torch computes it:
    ToTensor (x / 255) then Normalize (sub mean, div std)."""
    h, w, _ = rgb.shape
    nw, nh = shorter_side_size(w, h, size)
    img = Image.fromarray(rgb).resize((nw, nh), PIL_METHODS[method])
    top, left = int(round((nh - crop) / 2.0)), int(round((nw - crop) / 2.0))
    img = img.crop((left, top, left + crop, top + crop))
    x = np.asarray(img).astype(np.float32) / np.float32(255)
    mean = np.array([0.485, 0.456, 0.406], dtype=np.float32)
    std = np.array([0.229, 0.224, 0.225], dtype=np.float32)
    return np.ascontiguousarray(((x - mean) / std).transpose(2, 0, 1))


def main():
    jobs = json.load(open(sys.argv[1]))
    for job in jobs:
        rgb = np.load(job["input"])
        assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3, rgb.shape
        kind = job["kind"]
        if kind == "resize":
            out = resize(rgb, job["width"], job["height"], job["method"])
            np.save(job["output"], np.ascontiguousarray(out))
        elif kind == "pipeline":
            pixels, tensor = pipeline(rgb, job["config"])
            np.save(job["pixels"], pixels)
            np.save(job["output"], tensor)
        elif kind == "torchvision":
            np.save(job["output"], torchvision_tensor(rgb))
        elif kind == "nv12":
            np.save(job["output"], nv12_round_trip(rgb, job["range"], job["to"]))
        else:
            raise SystemExit(f"unknown job kind {kind!r}")


if __name__ == "__main__":
    main()
