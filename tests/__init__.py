import pytest

# The shared assertion helpers get pytest's detailed failure messages, as test modules do.
pytest.register_assert_rewrite("tests.helpers")
