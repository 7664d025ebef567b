package store

import "gorm.io/gorm"

// DBOf gives the store's own tests its GORM handle.
func DBOf(s *Store) *gorm.DB { return s.db }
