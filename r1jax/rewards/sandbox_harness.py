"""The trusted side of the code sandbox: copied into it as /work/harness.py and run there.

Standard library only (it runs in the sandbox's interpreter with `-I -S`, nothing of r1jax
visible). It tells the parent through an inherited pipe that it started, before any
model-written code runs: a byte in a pipe cannot be taken back, so the parent can tell "the
sandbox failed" (no byte) from "the program failed" (anything after it), whatever the program does.

Two modes:
- `harness.py FD`: run /work/prog.py as `__main__` (stdin, stdout, exit status as usual).
- `harness.py FD cases.json`: load prog.py as a module, call its entry point on each case's
  arguments and write the results, encoded by value (`encode`), to the pipe. The parent
  compares them with the expected values, which never enter the sandbox: nothing the program
  returns, prints or writes can stand for success, only the right values can.

`encode`/`decode` are also what the parent uses (r1jax.rewards.code imports them).
"""

import json
import os
import sys

MAX_DEPTH = 64


def encode(value, depth=0):
    """A JSON tree tagged with the exact type: `type(x) is int`, not isinstance, so a subclass
    with its own `__eq__` (or a bool posing as an int) is not what was asked for."""
    t = type(value)
    if depth > MAX_DEPTH:
        return ["too_deep"]
    if value is None:
        return ["none"]
    if t is bool:
        return ["bool", value]
    if t is int:
        try:
            return ["int", str(value)]
        except ValueError:  # more digits than int -> str allows
            return ["object", "int too large"]
    if t is float:
        return ["float", repr(value)]
    if t is str:
        return ["str", value]
    if t is list or t is tuple:
        return [t.__name__, [encode(v, depth + 1) for v in value]]
    if t is set or t is frozenset:
        return ["set", sorted((encode(v, depth + 1) for v in value), key=json.dumps)]
    if t is dict:
        return ["dict", sorted(([encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()),
                               key=json.dumps)]
    return ["object", t.__name__]


def decode(tree):
    """The inverse of `encode` for the types it tags (arguments are sent this way)."""
    tag = tree[0]
    if tag == "none":
        return None
    if tag == "bool":
        return bool(tree[1])
    if tag == "int":
        return int(tree[1])
    if tag == "float":
        return float(tree[1])
    if tag == "str":
        return str(tree[1])
    if tag == "list":
        return [decode(v) for v in tree[1]]
    if tag == "tuple":
        return tuple(decode(v) for v in tree[1])
    if tag == "set":
        return {decode(v) for v in tree[1]}
    if tag == "dict":
        return {decode(k): decode(v) for k, v in tree[1]}
    raise ValueError(f"cannot decode a {tag!r}")


def _load(path, run_name):
    with open(path, encoding="utf-8") as f:
        source = f.read()
    namespace = {"__name__": run_name, "__file__": path, "__builtins__": __builtins__}
    exec(compile(source, path, "exec"), namespace)  # inside the sandbox: running it is the point
    return namespace


def main():
    fd = int(sys.argv[1])
    os.write(fd, b"S")
    os.chdir(os.path.dirname(os.path.abspath(__file__)))  # /work in the sandbox
    if len(sys.argv) == 2:
        os.close(fd)
        sys.argv = ["prog.py"]
        _load("prog.py", "__main__")
        return
    with open(sys.argv[2], encoding="utf-8") as f:
        spec = json.load(f)
    results = []
    try:
        fn = _load("prog.py", "solution")[spec["entry_point"]]
    except BaseException as e:  # noqa: BLE001 - whatever the program raises, including SystemExit
        results = [["raised", type(e).__name__]] * len(spec["cases"])
    else:
        for args in spec["cases"]:
            try:
                results.append(encode(fn(*decode(args))))
            except BaseException as e:  # noqa: BLE001
                results.append(["raised", type(e).__name__])
    data = json.dumps(results).encode()
    while data:
        data = data[os.write(fd, data):]
    os.close(fd)


if __name__ == "__main__":
    main()
