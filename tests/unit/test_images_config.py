"""The images: block of gemhub.yaml: validated, documented, and turned into the image
service's entry, its role and the spawners' settings."""

from __future__ import annotations

import pytest
from config_inputs import INPUTS

from gemhub.hub_config.configurer import ConfigError, build_config, merge_platform


def test_the_image_service_entry_role_and_spawner_settings():
    c = build_config(merge_platform({"images": {"registry": "registry.local:5000/team", "catalog_dir": "/cat"}},
                                    {}), INPUTS)
    (entry,) = [s for s in c["JupyterHub"]["services"] if s["name"] == "images"]
    assert entry["command"][2] == "gemhub.services.images.app"
    assert "--ImagesService.registry=registry.local:5000/team" in entry["command"]
    assert "--ImagesService.catalog_dir=/cat" in entry["command"]
    assert entry["environment"]["GEMHUB_DATABASE_URL"] == "sqlite:////state/db/images.sqlite"
    assert not any("db_url" in a for a in entry["command"])  # secrets never on the command line
    # secrets never on the command line
    assert not any(INPUTS.service_tokens["quota"] in a for a in entry["command"])
    assert entry["environment"]["GEMHUB_QUOTA_TOKEN"] == INPUTS.service_tokens["quota"]
    (role,) = [r for r in c["JupyterHub"]["load_roles"] if r["name"] == "gemhub-images"]
    assert role["services"] == ["images"] and "read:servers" in role["scopes"] and "admin:users" not in role["scopes"]
    (user_role,) = [r for r in c["JupyterHub"]["load_roles"] if r["name"] == "user"]
    assert "access:services!service=images" in user_role["scopes"]
    spawner = c["LocalGemSpawner"]
    assert spawner["images_url"].endswith("/services/images/") and spawner["default_image"] == "base"
    assert spawner["allow_host_image"] is True


def test_kubernetes_without_a_registry_runs_the_configured_image():
    c = build_config(merge_platform({"spawner": {"runtime": "kubernetes"}}, {}), INPUTS)
    assert c["KubeGemSpawner"]["default_image"] == "host"
    c = build_config(merge_platform({"spawner": {"runtime": "kubernetes"}, "images": {"registry": "r:5000"}}, {}),
                     INPUTS)
    assert c["KubeGemSpawner"]["default_image"] == "base"


def test_the_default_image_can_be_overridden_from_the_environment():
    assert merge_platform({}, {"GEMHUB_DEFAULT_IMAGE": "host"})["images"]["default"] == "host"


@pytest.mark.parametrize("images, message", [
    ({"default": "a/b"}, "images.default"),
    ({"default": "host", "allow_host": False}, "allow_host is false"),
    ({"storage_driver": "btrfs"}, "storage_driver"),
    ({"build_concurrency": 0}, "build_concurrency"),
    ({"max_image_gb": 0}, "max_image_gb"),
    ({"max_context_gb": "2"}, "max_context_gb"),
    ({"registry": "https://r.example"}, "no scheme"),
    ({"registry": "user@r.example"}, "registry"),
    ({"regsitry": "x"}, "unknown key 'images.regsitry'"),
])
def test_bad_image_settings_are_refused_with_the_key(images, message):
    with pytest.raises(ConfigError, match=message):
        merge_platform({"images": images}, {})
