# One image for every DearDiary process (serve, worker); the command picks the role.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY client ./client
COPY schemas ./schemas
COPY projections ./projections
COPY services ./services
RUN pip install --no-cache-dir '.[s3]'
ENV DEARDIARY_DATA=/data
VOLUME ["/data"]
EXPOSE 9000
ENTRYPOINT ["deardiary"]
CMD ["serve", "--data", "/data", "--host", "0.0.0.0", "--auth"]
