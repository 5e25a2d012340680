-- docker-compose.yml's postgres service runs this once, as the superuser, when its data volume is empty
-- (/docker-entrypoint-initdb.d). Each service gets its own login role and owns its own database(s); no service
-- but postgres itself uses the superuser. Names and passwords come from the service's environment (.env);
-- psql quotes them (:"name" as an identifier, :'name' as a literal). A variable left unset stays as text and
-- stops the script with a syntax error.
\set ON_ERROR_STOP on
\getenv airflow_user AIRFLOW_DB_USER
\getenv airflow_password AIRFLOW_DB_PASSWORD
\getenv airflow_db AIRFLOW_DB
\getenv mlflow_user MLFLOW_DB_USER
\getenv mlflow_password MLFLOW_DB_PASSWORD
\getenv mlflow_db MLFLOW_DB
\getenv mlflow_auth_db MLFLOW_AUTH_DB

-- Plain login roles: no superuser, no CREATEDB, no CREATEROLE.
CREATE ROLE :"airflow_user" LOGIN PASSWORD :'airflow_password';
CREATE ROLE :"mlflow_user" LOGIN PASSWORD :'mlflow_password';

-- Airflow: the metadata database (and Celery's results). MLflow: the tracking store and the auth app's users.
CREATE DATABASE :"airflow_db" OWNER :"airflow_user";
CREATE DATABASE :"mlflow_db" OWNER :"mlflow_user";
CREATE DATABASE :"mlflow_auth_db" OWNER :"mlflow_user";

-- Every role may connect to a new database by default: keep each database to its owner.
REVOKE ALL ON DATABASE :"airflow_db" FROM PUBLIC;
REVOKE ALL ON DATABASE :"mlflow_db" FROM PUBLIC;
REVOKE ALL ON DATABASE :"mlflow_auth_db" FROM PUBLIC;
