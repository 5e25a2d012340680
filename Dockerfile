# Airflow image for docker-compose.yml (and the official Helm chart): the pinned lock plus the platform's
# code, so a worker needs nothing from the host. Build: docker-compose build (or docker build -t ... .).
FROM apache/airflow:3.3.2-python3.11
COPY requirements.txt /requirements.txt
# Pinning apache-airflow alongside the lock keeps pip from moving the image's Airflow.
RUN pip install --no-cache-dir "apache-airflow==3.3.2" -r /requirements.txt
COPY --chown=airflow:0 include /opt/airflow/include
COPY --chown=airflow:0 dags /opt/airflow/dags
COPY --chown=airflow:0 plugins /opt/airflow/plugins
ENV PYTHONPATH=/opt/airflow/include
