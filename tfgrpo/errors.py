"""Domain errors (public name). They live in `tfgrpo_common.errors`, below the store and the tasks, so
every layer raises the same classes; the CLI turns any `TfgrpoError` into one red line and exit code 2."""

from tfgrpo_common.errors import (
    BudgetExceeded,
    ConfigError,
    DataError,
    LLMError,
    ModelNotAvailableError,
    ModelUnreachable,
    StoreError,
    TfgrpoError,
    UnknownTaskError,
)

__all__ = ["BudgetExceeded", "ConfigError", "DataError", "LLMError", "ModelNotAvailableError", "ModelUnreachable",
           "StoreError",
           "TfgrpoError", "UnknownTaskError"]
