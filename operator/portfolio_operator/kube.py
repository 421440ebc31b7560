"""A small asynchronous facade over the official Kubernetes client.

The client is synchronous; its calls run on a small dedicated thread pool so that they never
queue behind long analyses (which have their own pool) nor block kopf's event loop. Errors are
sorted into temporary ones (retry with backoff) and permanent ones (the resource fails).
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from portfolio_operator.constants import DASK_GROUP, DASK_VERSION, GROUP, PLURAL, VERSION
from portfolio_operator.owners import controlled_by

T = TypeVar("T")


class KubeError(Exception):
    """A failed API call; ``temporary`` says whether retrying can help."""

    def __init__(self, message: str, status: int | None, temporary: bool) -> None:
        super().__init__(message)
        self.status = status
        self.temporary = temporary


class NotOwnedError(KubeError):
    """An object of the name the operator wants exists and is not its own: it is left alone."""

    def __init__(self, kind: str, namespace: str, name: str) -> None:
        super().__init__(
            f"a {kind} named {namespace}/{name} already exists and was not created by this "
            "PortfolioAnalysis; it was left untouched (rename or delete it, or rename this "
            "PortfolioAnalysis)",
            409,
            temporary=False,
        )


def load_api_client(kubeconfig: str | None = None) -> client.ApiClient:
    """Credentials from the pod's service account in a cluster, else from a kubeconfig."""
    configuration = client.Configuration()
    try:
        if kubeconfig is not None:
            raise ConfigException("a kubeconfig was given")
        config.load_incluster_config(client_configuration=configuration)
    except ConfigException:
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    configuration.connection_pool_maxsize = 16  # as many as KubeApi's threads, and then some
    return client.ApiClient(configuration)


def _message(exc: ApiException) -> str:
    try:
        return json.loads(exc.body or "{}").get("message") or str(exc.reason)
    except (ValueError, AttributeError):
        return str(exc.reason)


class KubeApi:
    """The handful of calls the operator makes, as coroutines."""

    def __init__(self, api_client: client.ApiClient, threads: int = 8) -> None:
        self.api_client = api_client
        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="kube-api")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.api_client.close()

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))
        except ApiException as exc:
            status = exc.status or 0
            temporary = status in (0, 408, 409, 429) or status >= 500
            raise KubeError(
                f"{fn.__name__} failed: {status} {_message(exc)}", status, temporary
            ) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise KubeError(f"{fn.__name__} failed: {exc}", None, True) from exc

    async def _call_unless(
        self, statuses: tuple[int, ...], fn: Callable[..., T], *args: Any, **kwargs: Any
    ) -> T | None:
        """``_call``, with None for the given statuses (e.g. 404: already gone, never there)."""
        try:
            return await self._call(fn, *args, **kwargs)
        except KubeError as exc:
            if exc.status in statuses:
                return None
            raise

    async def _get_or_none(self, fn: Callable[..., T], *args: Any) -> T | None:
        return await self._call_unless((404,), fn, *args)

    # PortfolioAnalysis --------------------------------------------------------------------

    async def get_analysis(self, namespace: str, name: str) -> dict | None:
        return await self._get_or_none(
            self.custom.get_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, name
        )

    async def patch_analysis_status(
        self, namespace: str, name: str, status: Mapping[str, Any]
    ) -> dict:
        """Merge-patch the status subresource (None values remove fields)."""
        return await self._call(
            self.custom.patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            {"status": dict(status)},
        )

    async def delete_analysis(self, namespace: str, name: str, uid: str) -> None:
        """Delete this very object (the uid precondition spares a re-created namesake)."""
        await self._call_unless(
            (404, 409),
            self.custom.delete_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            body={"preconditions": {"uid": uid}, "propagationPolicy": "Background"},
        )

    # dask-kubernetes resources ------------------------------------------------------------

    async def get_dask(self, plural: str, namespace: str, name: str) -> dict | None:
        return await self._get_or_none(
            self.custom.get_namespaced_custom_object, DASK_GROUP, DASK_VERSION, namespace,
            plural, name,
        )  # fmt: skip

    async def create_dask(self, plural: str, body: Mapping[str, Any]) -> bool:
        """Create a DaskCluster/DaskAutoscaler; False when one of that name already exists."""
        try:
            await self._call(
                self.custom.create_namespaced_custom_object,
                DASK_GROUP,
                DASK_VERSION,
                body["metadata"]["namespace"],
                plural,
                dict(body),
            )
        except KubeError as exc:
            if exc.status == 409:
                return False
            raise
        return True

    async def delete_dask(self, plural: str, namespace: str, name: str, uid: str) -> None:
        """Delete this very object: the uid precondition spares anything of the same name that
        replaced the one observed (a 409 then, like a 404, means ours is gone)."""
        await self._call_unless(
            (404, 409),
            self.custom.delete_namespaced_custom_object,
            DASK_GROUP,
            DASK_VERSION,
            namespace,
            plural,
            name,
            body={"preconditions": {"uid": uid}, "propagationPolicy": "Background"},
        )

    async def list_pods(self, namespace: str, selector: str) -> list[dict]:
        """The pods matching a label selector, as plain dicts."""
        found = await self._call(self.core.list_namespaced_pod, namespace, label_selector=selector)
        return [self.api_client.sanitize_for_serialization(pod) for pod in found.items]

    # ConfigMaps ---------------------------------------------------------------------------

    async def get_configmap(self, namespace: str, name: str) -> dict | None:
        """A ConfigMap as a plain dict, None when there is none of that name."""
        found = await self._get_or_none(self.core.read_namespaced_config_map, name, namespace)
        return None if found is None else self.api_client.sanitize_for_serialization(found)

    async def put_configmap(self, body: Mapping[str, Any], owner_uid: str) -> None:
        """Create the ConfigMap, or replace the one an earlier run of the same owner left.

        A ConfigMap of that name that `owner_uid` does not control is never replaced (that would
        hand a user's object to the garbage collector): NotOwnedError. The replacement carries
        the resourceVersion read, so a change made in between is a (temporary) conflict.
        """
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        try:
            await self._call(self.core.create_namespaced_config_map, namespace, dict(body))
            return
        except KubeError as exc:
            if exc.status != 409:
                raise
        existing = await self._get_or_none(self.core.read_namespaced_config_map, name, namespace)
        if existing is None:
            raise KubeError(f"ConfigMap {namespace}/{name} vanished while replacing it", 404, True)
        existing = self.api_client.sanitize_for_serialization(existing)
        if not controlled_by(existing, owner_uid):
            raise NotOwnedError("ConfigMap", namespace, name)
        replacement = {
            **body,
            "metadata": {
                **body["metadata"],
                "resourceVersion": existing["metadata"]["resourceVersion"],
            },
        }
        await self._call(self.core.replace_namespaced_config_map, name, namespace, replacement)
