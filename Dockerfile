# One image for both corridor nodes (and for `ebl verify`, `ebl audit`): the `ebl` command of this project.
FROM python:3.11-slim

WORKDIR /app
COPY pyproject.toml README.md ./
COPY ebl ./ebl
COPY api ./api
RUN pip install --no-cache-dir . \
    && useradd --create-home --uid 10001 ebl \
    && mkdir -p /data /corridor \
    && chown ebl:ebl /data /corridor
USER ebl

EXPOSE 8000
ENTRYPOINT ["ebl"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
