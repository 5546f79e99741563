"""Type stubs of the Rust module ``switchhead._native`` (re-exported by ``switchhead``)."""

import os
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union, overload

import numpy as np
import numpy.typing as npt

__version__: str

_Path = Union[str, "os.PathLike[str]"]
_Tokens = Union[npt.NDArray[np.int64], Sequence[int]]
_Memory = List[npt.NDArray[np.float32]]

def compile(
    model: Union[_Path, Dict[str, npt.NDArray[np.float32]]],
    output: _Path,
    *,
    format: Optional[str] = None,
    decompose: bool = False,
    kv_cache: bool = False,
    dtype: str = "f32",
    config: Optional[str] = None,
) -> None:
    """Compile a checkpoint path or a dict of float32 arrays (``config``: JSON text)."""

class Session:
    """A model loaded for running: a checkpoint (directory, ``.safetensors`` or ``.pth``,
    compiled in memory), an ONNX file or a ``.shplan`` plan. Thread-safe."""

    def __init__(
        self, path: _Path, *, threads: Optional[int] = None, executor: str = "auto"
    ) -> None: ...
    @overload
    def logits(self, tokens: _Tokens) -> npt.NDArray[np.float32]:
        """Logits ``[batch, seq, vocab]`` for int64 tokens ``[batch, seq]``."""
    @overload
    def logits(
        self, tokens: _Tokens, *, memory: _Memory
    ) -> Tuple[npt.NDArray[np.float32], _Memory]:
        """XL models: one chunk with ``memory`` (``[]`` for none); returns the next memory."""
    def decoder(self, batch: int = 1) -> "Decoder":
        """A stateful decoder (KV cache or XL memory) over this session."""
    @overload
    def generate(
        self,
        prompt: str,
        max_tokens: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: Optional[int] = None,
        *,
        tokenizer: Optional[_Path] = None,
    ) -> Iterator[str]:
        """Text pieces of up to ``max_tokens`` generated tokens, as they are made."""
    @overload
    def generate(
        self,
        prompt: Sequence[int],
        max_tokens: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: Optional[int] = None,
        *,
        tokenizer: Optional[_Path] = None,
    ) -> Iterator[int]:
        """Ids of up to ``max_tokens`` generated tokens, as they are made."""
    def encode(self, text: str, *, tokenizer: Optional[_Path] = None) -> List[int]:
        """``text`` as token ids (the model's tokenizer)."""
    def decode(self, ids: Sequence[int], *, tokenizer: Optional[_Path] = None) -> str:
        """The text of ``ids`` (the model's tokenizer)."""
    @property
    def vocab_size(self) -> int: ...
    @property
    def n_layers(self) -> int: ...
    @property
    def d_model(self) -> int: ...
    @property
    def is_xl(self) -> bool: ...
    @property
    def backend(self) -> str: ...
    @property
    def path(self) -> str: ...

class Decoder:
    """Feeds a session tokens a step at a time, keeping the KV cache or XL memory."""

    def step(self, tokens: _Tokens) -> npt.NDArray[np.float32]:
        """Logits ``[batch, seq, vocab]`` of ``tokens`` given everything fed before."""
    @property
    def position(self) -> int: ...
    @property
    def batch(self) -> int: ...

class Generator(Iterator[Union[str, int]]):
    """The iterator ``Session.generate`` returns."""

    def __iter__(self) -> "Generator": ...
    def __next__(self) -> Union[str, int]: ...
