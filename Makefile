# Everything a new user or CI needs: `make demo`, `make test`. Only Python 3.10+ is assumed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of PyTorch. Installing it before lic keeps pip from resolving `torch>=2.2`
# to the default CUDA build (several GB). Elsewhere, e.g.:
#   make TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cpu"
TORCH_SPEC ?= torch==2.13.0
DEMO := build/demo
# For the tests of `lic import compressai` (lic does not need it to run): without its dependencies,
# which pull torchvision; pyproject's test extra has the three its import needs.
COMPRESSAI_SPEC ?= compressai==1.2.8

KODAK ?= ../shared/data/kodak
JOBS ?= 2

.PHONY: install install-bench demo test bench bench-hyper bench-bitsback gpu-pack travel-size clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -e ".[test]"
	$(BIN)/python -m pip install --quiet --no-deps $(COMPRESSAI_SPEC)
	touch $@

demo: install
	@mkdir -p $(DEMO)
	$(BIN)/lic encode assets/kodim23.png -o $(DEMO)/kodim23.lic --force --verbose
	$(BIN)/lic decode $(DEMO)/kodim23.lic -o $(DEMO)/kodim23.png --force --verbose
	$(BIN)/lic info $(DEMO)/kodim23.lic
	$(BIN)/lic compare assets/kodim23.png $(DEMO)/kodim23.png

test: install
	$(BIN)/python -m pytest

install-bench: install
	$(BIN)/python -m pip install --quiet -e ".[bench]"

# The Kodak comparison in docs/results.md: every shipped model vs every installed classical codec.
bench: install-bench
	$(BIN)/lic bench $(KODAK) --out bench-out/kodak --jobs $(JOBS)
	$(BIN)/python benchmarks/render_results.py --bench bench-out/kodak

# hyper-bb (bits-back) and SGA against hyper on a Kodak subset (about 40 minutes on 2 cores).
bench-bitsback: install
	$(BIN)/python benchmarks/bitsback_kodak.py --kodak $(KODAK) --images 4 --qualities 1,2,4,6 --sga-steps 100 \
		--bbvi-steps 20 --out docs/results-bitsback.json
	$(BIN)/python benchmarks/render_results.py --bitsback docs/results-bitsback.json

# hyper alone, sequential with 2 torch threads (the speed numbers in docs/results.md).
bench-hyper: install
	$(BIN)/python benchmarks/kodak_hyper.py --kodak $(KODAK) --threads 2 --out docs/results-hyper.json
	$(BIN)/python benchmarks/render_results.py --hyper docs/results-hyper.json

# What a lent GPU machine needs beside the code (docs/gpu.md): the 40 MiB training pack and the two
# packages its image lacks, as Python 3.12 wheels, in the git-ignored folder .gpu/.
TRAIN_PACK ?= ../shared/data/train-pack
gpu-pack:
	rm -rf .gpu && mkdir -p .gpu
	cp -r $(TRAIN_PACK) .gpu/train
	$(PYTHON) -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
		-d .gpu/whl constriction==0.5.0 pytorch-msssim==1.0.0
	-@$(MAKE) --no-print-directory travel-size

# A device call sends the files in the working tree that git tracks or does not ignore, plus .gpu/,
# and refuses more than 64 MiB: the shipped weight files alone are about 84 MB (docs/gpu.md).
travel-size:
	@{ git ls-files -z --cached --others --exclude-standard; find .gpu -type f -print0 2>/dev/null; } \
		| xargs -0 stat -c %s 2>/dev/null \
		| awk '{ s += $$1 } END { printf "%.1f MiB would travel to a GPU machine (limit 64 MiB)\n", s / 2^20; \
			if (s > 64 * 2^20) { print "too much: move the weight files out first (docs/gpu.md)"; exit 1 } }'

clean:
	rm -rf $(VENV) build .pytest_cache .hypothesis
