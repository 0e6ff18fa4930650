module emlcheck

go 1.21
