"""EC2 for the aws-vm orchestrator: start an instance for a run, watch it, and let it end itself.

An instance finds itself by its tags (``stackmagic-run``, ``stackmagic-try``):
the launcher cannot know its id before it exists, and the tags need no call
to the instance metadata service. It also ends on its own if the runtime
could not start: the startup script powers it off, and an instance started
here terminates when it powers off.
"""

from __future__ import annotations

import functools
from typing import Any

from ..errors import StackmagicError
from ..flavors.base import require_module
from ..flavors.vm_orchestrators import AWSVMOrchestrator
from .clouds import VMCloud

RUN_TAG, TRY_TAG = "stackmagic-run", "stackmagic-try"
#: The AMI used when none is given: Docker and NVIDIA drivers, for --image.
DEFAULT_AMI_NAME = "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) *"
_ENDED = {"shutting-down", "terminated", "stopping", "stopped"}


def _client(service: str, machine: dict[str, Any]) -> Any:
    return _cached_client(service, machine["region"], machine.get("endpoint_url") or None)


@functools.cache
def _cached_client(service: str, region: str, endpoint_url: str | None) -> Any:
    """One client a process: following a run asks EC2 every few seconds."""
    require_module("boto3", "the aws-vm orchestrator", "aws")
    import boto3

    return boto3.client(service, region_name=region, endpoint_url=endpoint_url)


def _explained(action: str, error: Exception) -> StackmagicError:
    """One line for an EC2 error: what was refused, and AWS's own words."""
    response = getattr(error, "response", None) or {}
    detail = response.get("Error", {})
    words = f"{detail.get('Code')}: {detail.get('Message')}" if detail else str(error)
    return StackmagicError(f"EC2 refused to {action} ({words})")


class EC2(VMCloud[AWSVMOrchestrator]):
    """One region's instances, as the aws-vm orchestrator uses them."""

    cloud = "aws"
    image_option = "--ami"
    secret_manager = "AWS Secrets Manager"

    def image_has_python(self) -> bool:
        """An AMI someone chose is taken to have stackmagic; the default one has only Docker."""
        return bool(self.config.ami)

    def machine(self, run_id: str, attempt: int) -> dict[str, Any]:
        return {
            "cloud": self.cloud,
            "region": self.config.region,
            "endpoint_url": self.config.endpoint_url,
            "run": run_id,
            "try": attempt,
        }

    def launch_request(
        self, machine: dict[str, Any], script: str, *, look_up: bool = True
    ) -> dict[str, Any]:
        """The RunInstances request; ``look_up=False`` leaves the default AMI unresolved."""
        config = self.config
        tags = {
            **config.tags,
            "Name": f"stackmagic-{machine['run']}",
            RUN_TAG: machine["run"],
            TRY_TAG: str(machine["try"]),
        }
        request: dict[str, Any] = {
            "ImageId": config.ami
            or (self._default_ami(machine) if look_up else f"(newest '{DEFAULT_AMI_NAME}')"),
            "InstanceType": config.instance_type,
            "MinCount": 1,
            "MaxCount": 1,
            "UserData": script,
            "InstanceInitiatedShutdownBehavior": "terminate",
            "BlockDeviceMappings": [
                {
                    "DeviceName": "/dev/sda1",
                    "Ebs": {"VolumeSize": config.disk_size_gb, "DeleteOnTermination": True},
                }
            ],
            "TagSpecifications": [
                {
                    "ResourceType": kind,
                    "Tags": [{"Key": k, "Value": str(v)} for k, v in tags.items()],
                }
                for kind in ("instance", "volume")
            ],
        }
        if config.spot:
            request["InstanceMarketOptions"] = {
                "MarketType": "spot",
                "SpotOptions": {
                    "SpotInstanceType": "one-time",
                    "InstanceInterruptionBehavior": "terminate",
                },
            }
        if config.instance_profile:
            key = "Arn" if config.instance_profile.startswith("arn:") else "Name"
            request["IamInstanceProfile"] = {key: config.instance_profile}
        if config.subnet_id:
            request["SubnetId"] = config.subnet_id
        if config.security_group_ids:
            request["SecurityGroupIds"] = list(config.security_group_ids)
        return request

    def _default_ami(self, machine: dict[str, Any]) -> str:
        try:
            images = _client("ec2", machine).describe_images(
                Owners=["amazon"], Filters=[{"Name": "name", "Values": [DEFAULT_AMI_NAME]}]
            )["Images"]
        except Exception as error:
            raise _explained("list the Deep Learning AMIs", error) from None
        if not images:
            raise StackmagicError(
                f"no AMI named '{DEFAULT_AMI_NAME}' in {self.config.region}: give --ami"
            )
        return max(images, key=lambda image: image["CreationDate"])["ImageId"]

    def launch(self, machine: dict[str, Any], request: dict[str, Any]) -> tuple[str, str]:
        """Start the instance; its id and its page in the EC2 console."""
        try:
            reply = _client("ec2", machine).run_instances(**request)
        except Exception as error:
            raise _explained("start an instance", error) from None
        instance = reply["Instances"][0]["InstanceId"]
        region = machine["region"]
        url = (
            f"https://{region}.console.aws.amazon.com/ec2/home?region={region}"
            f"#InstanceDetails:instanceId={instance}"
        )
        return instance, url

    def state(self, machine: dict[str, Any], instance: str) -> str:
        """``running`` (or starting), ``ended`` (stopped, terminated, or gone)."""
        try:
            reservations = _client("ec2", machine).describe_instances(InstanceIds=[instance])[
                "Reservations"
            ]
        except Exception as error:
            if "InvalidInstanceID.NotFound" in str(error):
                return "ended"
            raise _explained(f"describe instance {instance}", error) from None
        instances = [i for r in reservations for i in r["Instances"]]
        if not instances or instances[0]["State"]["Name"] in _ENDED:
            return "ended"
        return "running"

    def delete(self, machine: dict[str, Any], instance: str) -> None:
        try:
            _client("ec2", machine).terminate_instances(InstanceIds=[instance])
        except Exception as error:
            raise _explained(f"terminate instance {instance}", error) from None

    # -- on the instance itself ----------------------------------------------------------

    @staticmethod
    def describe(machine: dict[str, Any]) -> str:
        return f"EC2 instance tagged {RUN_TAG}={machine['run']} in {machine['region']}"

    @staticmethod
    def read_secret(machine: dict[str, Any], name: str) -> str:
        """A Secrets Manager secret, read through the instance profile's rights."""
        try:
            return _client("secretsmanager", machine).get_secret_value(SecretId=name)[
                "SecretString"
            ]
        except Exception as error:
            raise _explained(f"read the secret {name!r} from Secrets Manager", error) from None

    @staticmethod
    def delete_self(machine: dict[str, Any]) -> None:
        """Terminate the instances of this run's try: this one."""
        ec2 = _client("ec2", machine)
        try:
            reservations = ec2.describe_instances(
                Filters=[
                    {"Name": f"tag:{RUN_TAG}", "Values": [machine["run"]]},
                    {"Name": f"tag:{TRY_TAG}", "Values": [str(machine["try"])]},
                    {"Name": "instance-state-name", "Values": ["pending", "running"]},
                ]
            )["Reservations"]
            ids = [i["InstanceId"] for r in reservations for i in r["Instances"]]
            if ids:
                ec2.terminate_instances(InstanceIds=ids)
        except Exception as error:
            raise _explained("terminate this instance", error) from None
