# Airflow image for docker-compose.yml: the pinned lock plus the platform package.
FROM apache/airflow:3.3.2-python3.11
COPY requirements.txt /requirements.txt
RUN pip install --no-cache-dir -r /requirements.txt
ENV PYTHONPATH=/opt/airflow/include
