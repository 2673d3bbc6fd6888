"""Robot description lookup, the contract's joint order, and URDF to MuJoCo conversion."""
