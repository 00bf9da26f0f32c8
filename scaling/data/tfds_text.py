"""Prepares a character-level TFDS dataset (ArrayRecord, no TensorFlow) from a text file.

  python -m scaling.data.tfds_text --text input.txt --data_dir ~/tensorflow_datasets [--name char_text]

Examples are chunks of `chunk_chars` character ids (feature `tokens`); the last
`eval_fraction` of the text is the `test` split. The alphabet and vocab size go
in the dataset's metadata, so a sweep names the result by TFDS name alone:
`data: {kind: tfds, name: char_text, data_dir: ...}`.
"""
import argparse
import re

import numpy as np


def _builder_class(name: str):
  import tensorflow_datasets as tfds

  class _CharText(tfds.core.GeneratorBasedBuilder, skip_registration=True):  # only its named subclass registers
    VERSION = tfds.core.Version("1.0.0")

    def __init__(self, *, text_path=None, chunk_chars=1024, eval_fraction=0.1, **kwargs):
      self._text_path, self._chunk, self._eval_fraction = text_path, chunk_chars, eval_fraction
      super().__init__(**kwargs)

    def _read(self):
      text = open(self._text_path, encoding="utf-8").read()
      alphabet = sorted(set(text))
      return text, alphabet

    def _info(self):
      metadata = tfds.core.MetadataDict()
      if self._text_path is not None:
        _, alphabet = self._read()
        metadata.update({"alphabet": "".join(alphabet), "vocab_size": len(alphabet)})
      # DatasetInfo(builder=self) rather than dataset_info_from_configs: works for builders defined in code.
      return tfds.core.DatasetInfo(
          builder=self, metadata=metadata,
          features=tfds.features.FeaturesDict({"tokens": tfds.features.Tensor(shape=(None,), dtype=np.int32)}))

    def _split_generators(self, dl_manager):
      text, alphabet = self._read()
      lookup = {ch: i for i, ch in enumerate(alphabet)}
      ids = np.fromiter((lookup[ch] for ch in text), dtype=np.int32, count=len(text))
      split = int(len(ids) * (1 - self._eval_fraction))
      return {"train": self._generate_examples(ids[:split]), "test": self._generate_examples(ids[split:])}

    def _generate_examples(self, ids):
      for i, start in enumerate(range(0, len(ids), self._chunk)):
        yield i, {"tokens": ids[start:start + self._chunk]}

  # TFDS names a dataset after its builder class: CharText -> char_text.
  class_name = "".join(part.capitalize() for part in name.split("_"))
  return type(class_name, (_CharText,), {})


def prepare(text_path: str, data_dir: str, name: str = "char_text", chunk_chars: int = 1024,
            eval_fraction: float = 0.1) -> str:
  """Builds the dataset; returns its directory."""
  import tensorflow_datasets as tfds
  if not re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", name):
    raise ValueError(f"dataset name {name!r}: use snake_case letters and digits")
  tfds.disable_progress_bar()
  builder = _builder_class(name)(text_path=text_path, chunk_chars=chunk_chars, eval_fraction=eval_fraction,
                                 data_dir=data_dir, file_format="array_record")
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  return builder.data_dir


def main(argv=None):
  parser = argparse.ArgumentParser(prog="python -m scaling.data.tfds_text")
  parser.add_argument("--text", required=True)
  parser.add_argument("--data_dir", required=True)
  parser.add_argument("--name", default="char_text")
  parser.add_argument("--chunk_chars", type=int, default=1024)
  args = parser.parse_args(argv)
  print(prepare(args.text, args.data_dir, args.name, args.chunk_chars))


if __name__ == "__main__":
  main()
