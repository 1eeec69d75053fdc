# CUDA PyTorch base image; camtl's requirements on top; `docker run IMAGE <run.py flags>`.
FROM pytorch/pytorch:2.9.1-cuda12.8-cudnn9-runtime

WORKDIR /opt/camtl
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY camtl/ camtl/
COPY run.py download_glue_data.py ./

ENTRYPOINT ["python", "run.py"]
