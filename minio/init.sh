#!/bin/sh
# docker-compose.yml's s3-init (one-shot, minio/mc image): creates the buckets and one MinIO user per service
# with a policy limited to its buckets, so neither the Airflow workers nor MLflow hold MinIO's root keys:
#   airflow  the lake and the task-log buckets
#   mlflow   the artifacts bucket
# Only this step sees the root keys. Re-runnable: existing buckets are kept, `user add` resets a user's secret,
# `policy create` replaces a policy, and `policy attach` of an attached policy succeeds (mc 2024-10 and later).
# The policies use the AWS IAM grammar; docs/deploy.md gives the same ones for real S3.
set -eu

# s3://bucket/prefix -> bucket
bucket_of() {
  without_scheme=${1#s3://}
  echo "${without_scheme%%/*}"
}

# Object reads and writes, listing and multipart uploads, in the named buckets only.
bucket_policy() {
  buckets="" objects=""
  for each in "$@"; do
    buckets="$buckets${buckets:+,}\"arn:aws:s3:::$each\""
    objects="$objects${objects:+,}\"arn:aws:s3:::$each/*\""
  done
  printf '{"Version":"2012-10-17","Statement":[%s,%s]}\n' \
    "{\"Effect\":\"Allow\",\"Action\":[\"s3:GetBucketLocation\",\"s3:ListBucket\",\"s3:ListBucketMultipartUploads\"],\"Resource\":[$buckets]}" \
    "{\"Effect\":\"Allow\",\"Action\":[\"s3:GetObject\",\"s3:PutObject\",\"s3:DeleteObject\",\"s3:AbortMultipartUpload\",\"s3:ListMultipartUploadParts\"],\"Resource\":[$objects]}"
}

# service_user NAME ACCESS_KEY SECRET_KEY BUCKET...
service_user() {
  name=$1 access_key=$2 secret_key=$3
  shift 3
  if [ "$access_key" = "$MINIO_ROOT_USER" ]; then
    echo "s3-init: the $name access key must not be MinIO's root user" >&2
    exit 1
  fi
  policy_file="${TMPDIR:-/tmp}/$name-buckets.json"
  bucket_policy "$@" > "$policy_file"
  mc admin policy create local "$name-buckets" "$policy_file"
  mc admin user add local "$access_key" "$secret_key"
  mc admin policy attach local "$name-buckets" --user "$access_key"
}

mc alias set local "$S3_INTERNAL_URL" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"
lake=$(bucket_of "$LAKE_URI")
logs=$(bucket_of "$AIRFLOW_LOGS_URI")
artifacts=$(bucket_of "$MLFLOW_ARTIFACTS_URI")
for each in "$lake" "$logs" "$artifacts"; do
  mc mb --ignore-existing "local/$each"
done
service_user airflow "$AIRFLOW_S3_ACCESS_KEY_ID" "$AIRFLOW_S3_SECRET_ACCESS_KEY" "$lake" "$logs"
service_user mlflow "$MLFLOW_S3_ACCESS_KEY_ID" "$MLFLOW_S3_SECRET_ACCESS_KEY" "$artifacts"
