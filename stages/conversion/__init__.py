"""Conversion stage: DSA-110 subband UVH5 files -> one CASA Measurement Set.

Streaming (chunked h5py reads), phased to the meridian at the group midpoint,
written directly with python-casacore, one dask task per subband, staged in tmpfs
and moved atomically into the products directory.
"""

from .discovery import DiscoveryResult, SubbandGroup, discover
from .stage import ConversionConfig, ConversionStage

Config = ConversionConfig

__all__ = ["ConversionStage", "ConversionConfig", "Config", "discover", "DiscoveryResult",
           "SubbandGroup"]
